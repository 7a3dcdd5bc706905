# The worker of ecosystem.config.js (run by bash, as PM2 runs a .sh script).
echo "worker on $QUEUE"
while true; do sleep 5; done
