"""The daemon: MQTT payloads in, aligned grid rows to windows, scores and alerts out."""
