"""The queue domain of QueueDesk, in pure Python.

Value objects, queue events, the ticket state machine (``decide``/``apply`` for a
branch), call-next ordering, ticket numbering from leased blocks, the permission
catalogue with its default roles, and the reference implementation of every KPI.
Nothing here touches the screen, the network, a database or a keyring, so the
central service and the desktop console run exactly the same rules.
"""
