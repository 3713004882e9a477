"""A MetaApi stand-in anyone can run: `sigrelay sim metaapi [--port P]`.

One aiohttp server on 127.0.0.1 speaks what metaapi-cloud-sdk 29.x speaks on its
RPC path: the provisioning REST (`rest.py`), the socket.io websocket at `/ws`
(python-socketio 4.x, Engine.IO 3, `rpc.py`), and plain JSON control endpoints
under `/_sim/` (`control.py`) that the `sigrelay sim metaapi price|disconnect|
throttle` clients call (`cli.py`). Every account id exists on first use, each with
its own paper book on one shared market (`accounts.py`, on the execution service's
`PaperExchange`). What it does not speak is listed in docs/METAAPI_SIM.md.
"""
