"""The inference service (BentoML): ranked grasps for robots and for dataset rounds.

`service.py` holds the BentoML service; `model.py` turns a registered model into the
`regrasp.learn.predict.Forward` the library runs. Logic lives in `regrasp.learn.predict`.
"""
