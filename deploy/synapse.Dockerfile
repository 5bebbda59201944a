# Synapse as the compose stack runs it: the official image, plus the two libraries the content
# rules use (policy/ is mounted beside the module and imported by it).
FROM matrixdotorg/synapse:v1.163.2
RUN pip install --no-cache-dir "phonenumbers>=9.0.43" "confusable-homoglyphs>=3.3.1"
