"""Adapting retrieval to a user's own corpus without labels (issue #11): synthetic queries
generated from the corpus and filtered by the current system (`generate`)."""
