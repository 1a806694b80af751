"""One subpackage per stage; each owns its orchestration (``stage.py``) and its private parts."""
