for (let i = 0; i < 3; i++) {
const t0 = performance.now();
const w = new Worker("data:text/javascript,self.onmessage=()=>{}", { type: "module" });
const t1 = performance.now();
console.log("new Worker (trivial)", (t1 - t0).toFixed(1));
w.terminate();
}
