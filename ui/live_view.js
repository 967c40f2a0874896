() => {
  // The live view of ui/page.py, run once when the page loads (Blocks.launch(js=...)).
  // One short request at a time, never an endless one: GET live/TOKEN.jpg?after=SEQ answers
  // with the session's newest annotated frame once its sequence number is above SEQ, or with
  // 204 after about half a second. An endless multipart/x-mixed-replace response per tab held
  // one of the browser's six HTTP/1.1 connections to the server for good; with Gradio's own
  // heartbeat stream per tab, three tabs filled all six and the third never got a prediction.
  // TOKEN is the data-token of <img id="live-img">; a new session (page reload) brings a new
  // <img> with a new token, picked up on the next round.
  const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
  let token = null;
  let seq = 0;
  let shownUrl = null;  // the object URL on screen: revoked once the next one is decoded
  const show = (img, blob) => {
    // Not awaited: the next request goes out while this frame decodes.
    const previous = shownUrl;
    shownUrl = URL.createObjectURL(blob);
    img.src = shownUrl;
    img.decode().catch(() => {}).finally(() => {
      if (previous !== null) URL.revokeObjectURL(previous);
    });
  };
  const fetchOne = async (img) => {
    const reply = await fetch(`live/${token}.jpg?after=${seq}`,
                              {cache: "no-store", signal: AbortSignal.timeout(10000)});
    if (reply.status === 204) return 0;      // no new frame yet: ask again at once
    if (reply.status !== 200) return 1000;   // session closed (404), logged out (401): back off
    const next = Number(reply.headers.get("X-Frame-Seq"));
    show(img, await reply.blob());
    if (Number.isFinite(next)) seq = next;
    return 0;
  };
  const loop = async () => {
    for (;;) {
      const img = document.getElementById("live-img");
      const current = img ? img.dataset.token : undefined;
      if (!current || document.hidden) {  // not loaded yet, or a tab nobody looks at
        await sleep(200);
        continue;
      }
      if (current !== token) {
        token = current;
        seq = 0;
      }
      let pause;
      try {
        pause = await fetchOne(img);
      } catch (err) {
        pause = 1000;  // server gone or restarting, or no answer within 10 s
      }
      if (pause > 0) await sleep(pause);
    }
  };
  loop();  // not awaited: Gradio awaits this function's result before it goes on
}
