# Wingmask: the dashboard (default) or the HTTP API, with the committed models baked in.
#   docker build -t wingmask .
#   docker run --rm -p 8501:8501 wingmask                       # dashboard on http://localhost:8501
#   docker run --rm -p 8000:8000 wingmask \
#       python -m seg_core.serve --host 0.0.0.0 --port 8000     # API on http://localhost:8000/docs
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    TF_CPP_MIN_LOG_LEVEL=2 \
    KERAS_BACKEND=tensorflow

WORKDIR /app
# Dependencies first, so editing code does not reinstall them.
COPY requirements.txt .
RUN pip install -r requirements.txt

# Code and models stay owned by root: the app runs as a user that cannot change them.
COPY . .
RUN useradd --create-home --uid 10001 wingmask
USER 10001

EXPOSE 8501 8000
# Healthy when whichever server runs answers on its port inside the container: the dashboard's
# /_stcore/health, or the API's /health (200 only once its models are loaded; urlopen raises otherwise).
HEALTHCHECK --interval=30s --timeout=10s --start-period=90s --retries=3 CMD ["sh", "-c", "\
python -c \"import urllib.request as u; u.urlopen('http://127.0.0.1:8501/_stcore/health', timeout=4)\" 2>/dev/null \
|| python -c \"import urllib.request as u; u.urlopen('http://127.0.0.1:8000/health', timeout=4)\""]

CMD ["python", "-m", "streamlit", "run", "streamlit_app.py", "--server.address=0.0.0.0", "--server.port=8501"]
