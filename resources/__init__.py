"""Files shipped with QueueDesk: SVG icons, QSS themes, notification templates,
translations and sounds. Load them with :mod:`importlib.resources`, never by path.
"""
