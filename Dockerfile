# Images of the live system. Two targets (llama.cpp links OpenMP: libgomp1 must stay installed):
#   app      the services (pgkd serve|feedback|mine|train, pgkd up with external parts)
#   teacher  app plus the embedded llama.cpp teacher and its model (pgkd teacher serve)
# Secrets (teacher API key, Kafka and Redis passwords) come from the environment at run time.
FROM python:3.11-slim AS app
ENV PIP_NO_CACHE_DIR=1 PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
WORKDIR /app
# The CPU build of torch; the default index would pull a multi-GB CUDA build.
RUN pip install --index-url https://download.pytorch.org/whl/cpu torch==2.13.0
COPY pyproject.toml README.md ./
COPY pgkd pgkd
COPY streams streams
COPY consumers consumers
COPY producers producers
COPY cli cli
RUN pip install ".[stream]"
RUN useradd --create-home --uid 10001 pgkd && mkdir -p /registry && chown pgkd /registry
USER pgkd
EXPOSE 9000
ENTRYPOINT ["pgkd"]
CMD ["--help"]

FROM app AS teacher
USER root
RUN apt-get update && apt-get install -y --no-install-recommends build-essential cmake \
    && CMAKE_ARGS="-DGGML_NATIVE=OFF" pip install "llama-cpp-python[server]==0.3.36" \
    && pip install ".[local]" \
    && apt-get purge -y build-essential cmake && apt-get autoremove -y \
    && apt-get install -y --no-install-recommends libgomp1 \
    && rm -rf /var/lib/apt/lists/*
RUN mkdir -p /home/pgkd/.cache/pgkd && chown -R pgkd /home/pgkd/.cache
USER pgkd
EXPOSE 8011
CMD ["teacher", "serve", "--host", "0.0.0.0", "--port", "8011"]
