"""The prediction service: an ASGI app serving a registered model's champion.

Generic over what it serves (``ServedModel``); a pipeline declares its request fields and how
they become model inputs, with the same feature code its assets use.
"""
