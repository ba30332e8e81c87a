"""`zhbert monitor`: a live, read-only local dashboard for training runs (see server.py)."""
