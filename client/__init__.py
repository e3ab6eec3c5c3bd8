"""`image-service`: upload a product CSV, watch it being processed, save the output CSV (CONTRACT §9)."""
