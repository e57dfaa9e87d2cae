# The platform's image: gateway and stream workers (see compose.yaml).
FROM python:3.11-slim

RUN useradd --system --create-home --uid 10001 iot
WORKDIR /app
COPY pyproject.toml README.md ./
COPY config ./config
COPY contracts ./contracts
COPY policy ./policy
COPY security ./security
COPY iot_gateway ./iot_gateway
COPY streams ./streams
COPY devstack ./devstack
COPY iotctl ./iotctl
COPY schemas ./schemas
RUN pip install --no-cache-dir .

USER iot
ENTRYPOINT []
CMD ["iotctl", "--help"]
