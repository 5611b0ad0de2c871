"""Checkout pages (hosted and embedded) served by the API."""
