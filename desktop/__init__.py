"""The QueueDesk staff console (PySide6 + qasync).

Windows, widgets, Qt item models and the bridge to the background sync thread.
It reads and writes the local cache only through ``sync`` and never does SQL or
HTTP of its own.
"""
