"""Sources and readers: GeoTIFF/COG (:mod:`.raster`), FITS (:mod:`.fits`), paths and URLs (:mod:`.paths`),
arrays (:mod:`.arrays`), proxies (:mod:`.proxy`), detection catalogues (:mod:`.catalogs`), model files."""
