"""One module per app tab: layout and callbacks, calling mindeye.engine only."""

# the image toolbars: no Share button (it works only on Hugging Face Spaces and errors everywhere else)
IMAGE_BUTTONS = ["download", "fullscreen"]
