"""How much work one message may cause, whatever its shape.

Each detector examines at most MAX_CANDIDATES candidates one by one (an address, a number,
a term...). A message with more is abuse: the rest of it, from there on, is one finding of
that kind, so that decoys cannot hide what follows them and the work stays bounded.
Ordinary numbers (prices, dates...) are recognised around the first MASK_BUDGET characters
of candidate phone numbers; past that, digits count as they stand.
"""

MAX_CANDIDATES = 128
MASK_BUDGET = 8192
