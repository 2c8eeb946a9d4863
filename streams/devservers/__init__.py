"""Local development servers and runners (demo, tests, benchmarks): a real Tansu broker and a real
redis-server on free ports, a worker on a background thread, a paced producer. The worker image
never imports this package."""
