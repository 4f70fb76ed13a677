"""Where object bytes live: the port (`port.py`) and its adapters (`local.py`, `s3.py`)."""
