"""The domain: accounts, chats, messages, presence and fan-out.

Nothing in this package imports a web framework, a database driver or a cloud SDK; adapters
implement the ports of ``ports.py`` and ``stratochat.app`` wires them together.
"""
