"""The approver's review page: decide on a pending model from the evidence, in a browser."""
