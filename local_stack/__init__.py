"""`make run`: the whole service on one machine, supervised, with embedded servers by default."""
