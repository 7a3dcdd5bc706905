// The api of ecosystem.config.js: says it started and stays up.
console.log(`${process.argv.slice(2).join(' ')} started in ${process.env.NODE_ENV}`);
setInterval(() => {}, 1 << 30);
