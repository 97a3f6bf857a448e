"""Decision records at line volume: the store every decision goes to, the image archive, the MES outbox."""
