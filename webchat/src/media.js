// Media from the homeserver's authenticated media API: an <img> cannot send the access token,
// so the bytes are fetched with it and shown from a blob: URL (kept per mxc URL and size).
export class Media {
  constructor(client) {
    this.client = client;
    this.cache = new Map();
  }

  url(mxc, width, height) {
    if (typeof mxc !== "string" || !mxc.startsWith("mxc://")) return Promise.resolve(null);
    const key = `${mxc}|${width || ""}|${height || ""}`;
    if (!this.cache.has(key)) {
      const http = this.client.mxcUrlToHttp(mxc, width, height, width ? "scale" : undefined, false, true, true);
      const loading = http ? this.fetchBlob(http) : Promise.resolve(null);
      loading.catch(() => this.cache.delete(key)); // a failure is tried again next time
      this.cache.set(key, loading);
    }
    return this.cache.get(key);
  }

  async fetchBlob(http) {
    const response = await fetch(http, {
      headers: { Authorization: `Bearer ${this.client.getAccessToken()}` },
      referrerPolicy: "no-referrer",
    });
    if (!response.ok) throw new Error(`media answered ${response.status}`);
    return URL.createObjectURL(await response.blob());
  }

  async download(mxc, name) {
    const url = await this.url(mxc);
    if (!url) return;
    const link = document.createElement("a");
    link.href = url;
    link.download = name || "file";
    link.rel = "noopener";
    document.body.append(link);
    link.click();
    link.remove();
  }

  close() {
    for (const loading of this.cache.values()) {
      loading.then((url) => url && URL.revokeObjectURL(url)).catch(() => {});
    }
    this.cache.clear();
  }
}
