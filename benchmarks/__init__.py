"""`make bench`: the service end to end against the Pillow ceiling on the same images."""
