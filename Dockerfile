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
# Mount points of compose.yaml's volumes, owned by the user that writes them, so a new named
# volume starts out writable: the security state (policy apply) and Mosquitto's persistence.
RUN mkdir -p /var/lib/iot /var/lib/iot-mosquitto && chown iot:iot /var/lib/iot /var/lib/iot-mosquitto

USER iot
ENTRYPOINT []
CMD ["iotctl", "--help"]
