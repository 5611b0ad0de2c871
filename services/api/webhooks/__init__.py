"""Merchant endpoints that manage webhook endpoints and deliveries."""
