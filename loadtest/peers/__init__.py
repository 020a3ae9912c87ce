"""The servers cascade-serve is compared with: what a user would write or pick instead.

Each serves the same bundle (the store's active ONNX cascade graph, in onnxruntime) and answers the same
`POST /v1/rank` bodies with the same top-k and fusion weights. They read the bundle and the item table from
disk with json, numpy and onnxruntime alone (loadtest/peers/bundle.py): a peer imports nothing of service/
or contracts/, so it costs what an independent implementation costs.
"""
