"""The low and high of an asset's price history, computed on the cluster.

A CSV of ticks (``Timestamp,Ask,Bid,AskVolume,BidVolume``) is read in chunks, each
chunk scanned on a worker (:mod:`demos.prices.ticks`), the chunks' answers merged
(:mod:`demos.prices.compute`). ``python -m demos.prices --help`` says how to run it;
``python -m demos.prices.generate`` makes a sample file; ``--serve`` opens a page to
pick a file and a column (:mod:`demos.prices.serve`).
"""
