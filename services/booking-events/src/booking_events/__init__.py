"""The booking events service: progress streams, the customer's progress page and the ops console.

An aiohttp process apart from the API's gunicorn, so that hundreds of
long-lived streams cost one coroutine each and never a request thread of the
accept path (see README.md for the serving model).
"""
