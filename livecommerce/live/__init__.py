"""Live rooms: a room's state and event log in Redis (`store`), the cross-process bus (`bus`), the one builder
of each server event (`events`) and `LiveRooms`, the one way a web process publishes to a room (`rooms`).

Transports (the Socket.IO hub, media, REST) publish through `LiveRooms`; nothing else builds a server event.
"""
