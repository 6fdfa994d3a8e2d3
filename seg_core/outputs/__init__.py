"""What a mask becomes: clean-up, cut-outs, soft edges, refined edges, annotations,
compact per-photo results, file names and archives.
"""
