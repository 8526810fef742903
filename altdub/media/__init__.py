"""Media: probing with PyAV and FFmpeg command plans. Pure of HTTP and database concerns."""
