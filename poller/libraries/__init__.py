"""The ``libraries`` source: Mistral's libraries and the processing of their documents.

``core`` holds the rules (keys, remembered forms, what changed, event ids) as pure
functions; ``source`` polls the API with them; ``hints`` reads the calls that change a
library or a document through the proxy.
"""
