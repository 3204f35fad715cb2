"""The real-time hub: Socket.IO connections, rooms, and delivery of live events to viewers."""
