import os
import sys

# A flat layout without a package: make the modules and the scripts in tools/ importable from tests/.
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [ROOT, os.path.join(ROOT, 'tools')]
