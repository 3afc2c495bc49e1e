"""The request path (Envoy's data plane): downstream connections, exchanges, routing and pins, clusters and upstream pools; compiled with mypyc as a whole."""
