"""The resource metrics API (metrics.k8s.io/v1beta1 NodeMetrics and PodMetrics) served by the
kubelite server the way metrics-server serves it: every node's ``/metrics/resource`` scraped
every 15 s (and at start) over the node's serving TLS, the last two points of each node and
container kept, CPU the rate between them over their window (``storage.py``, ``scraper.py``),
answered from there for ``get`` and ``list`` with namespaces and label selectors
(``rest.py``): what ``kubectl top`` reads."""
