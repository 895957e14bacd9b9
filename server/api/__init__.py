"""HTTP routes of the central service, by concern, under ``/api/v1``."""
