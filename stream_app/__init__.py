"""Stream side: the Faust scoring worker, the hot-path scoring code, the model store and hot reload."""
