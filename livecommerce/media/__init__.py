"""LIVE video: WHIP ingest, WHEP playback, and forwarding the host's encoded media to every viewer.

`http` speaks WHIP/WHEP, `sessions` owns the peer connections and the room's video state, `forwarding` is
the one module that reaches into aiortc's internals (see its docstring).
"""
