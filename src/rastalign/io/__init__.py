"""Readers and writers: GeoTIFF/COG (:mod:`.raster`), FITS (:mod:`.fits`),
detection catalogues (:mod:`.catalogs`), atomic file helpers (:mod:`.atomic`)."""
