"""The ``presence-b2b`` command: the top layer, which nothing else imports."""
