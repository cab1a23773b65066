import os
import sys

# The repository is a flat layout without a package: make its modules importable from tests/.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
