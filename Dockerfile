# MindEye Explorer on a GPU machine.
#   docker build -t mindeye-explorer .
#   docker run --gpus all -p 7860:7860 \
#       -v /path/to/nsd:/data/nsd -v /path/to/weights:/weights -v mindeye-data:/app/data \
#       mindeye-explorer                       # demo bundle; add --bundle /weights/my-bundle for real data
# Inside the container the app binds 0.0.0.0 so the published port reaches it; the NSD folder and model
# weights are volumes (NSD's terms forbid baking its data into an image).
FROM nvidia/cuda:12.8.1-cudnn-runtime-ubuntu22.04

ENV DEBIAN_FRONTEND=noninteractive PYTHONUNBUFFERED=1 \
    GRADIO_ANALYTICS_ENABLED=False HF_HUB_OFFLINE=1 HF_HOME=/weights/hf
RUN apt-get update && apt-get install -y --no-install-recommends software-properties-common \
    && add-apt-repository -y ppa:deadsnakes/ppa && apt-get update \
    && apt-get install -y --no-install-recommends python3.11 python3.11-venv make \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /app
COPY requirements.txt Makefile ./
RUN make venv PYTHON=python3.11
COPY . .

VOLUME ["/data/nsd", "/weights", "/app/data"]
EXPOSE 7860
ENTRYPOINT [".venv/bin/python", "app.py", "--host", "0.0.0.0", "--port", "7860"]
