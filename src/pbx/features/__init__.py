"""
The features of pbx, one package each: its dropin object (``feature.py``),
its service, its dialplan applications, API, options and the interfaces it
offers other features.  A dropin in :mod:`pbx.plugins` names each one.
"""
