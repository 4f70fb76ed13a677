"""Where object bytes live: the port (`port.py`) and its adapters (`local.py`; S3 in part 2)."""
