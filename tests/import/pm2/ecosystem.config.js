// A PM2 ecosystem file in the style of PM2's documentation: a program, not data.
const os = require('os');

module.exports = {
  apps: [
    {
      name: 'api',
      script: './app.js',
      args: '--name api',
      instances: 'max',
      exec_mode: 'cluster',
      max_memory_restart: '200M',
      kill_timeout: 3000,
      env: {
        NODE_ENV: 'development',
        THREADS: os.cpus().length > 0 ? 4 : 1,
      },
      env_production: {
        NODE_ENV: 'production',
      },
    },
    {
      name: 'worker',
      script: 'worker.sh',
      cron_restart: '0 3 * * *',
      max_restarts: 10,
      min_uptime: '5s',
      restart_delay: 1000,
      watch: ['lib'],
      error_file: './logs/worker.err.log',
      env: {
        QUEUE: 'default',
        STARTED_AT: () => new Date().toISOString(),
      },
    },
  ],

  deploy: {
    production: {
      user: 'deploy',
      ref: 'origin/main',
      path: '/srv/app',
    },
  },
};
