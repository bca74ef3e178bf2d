// Drives the official @botpress/chat client (pinned in package.json) against the Botpress
// stand-in: argv[2] is the stand-in's API URL ({url}/{webhook id}), argv[3] its encryption key.
// Prints one JSON line of what the library got back; exits non-zero on any library error.
import { Client } from '@botpress/chat'

const [apiUrl, encryptionKey] = process.argv.slice(2)
const out = {}

// connect without a key: createUser; with an encryption key: getOrCreateUser
const client = await Client.connect({ apiUrl })
out.userId = client.user.id
const again = await Client.connect({ apiUrl, userId: 'customer-42', encryptionKey })
const same = await Client.connect({ apiUrl, userId: 'customer-42', encryptionKey })
out.getOrCreateUser = again.user.id === same.user.id ? again.user.id : 'different users'

const { conversation } = await client.createConversation({})
const { conversation: named } = await client.getOrCreateConversation({ id: 'conv-named' })
const { conversation: namedAgain } = await client.getOrCreateConversation({ id: 'conv-named' })
out.getOrCreateConversation = named.id === namedAgain.id ? named.id : 'different conversations'

const listener = await client.listenConversation({ id: conversation.id })
const heard = []
const botSaid = new Promise((resolve, reject) => {
  listener.on('message_created', (message) => {
    heard.push(message)
    if (message.isBot) resolve(message)
  })
  listener.on('error', reject)
})

const { message } = await client.createMessage({
  conversationId: conversation.id,
  payload: { type: 'text', text: 'Pizza', value: 'PIZZA' },
})
out.sent = message.payload
let timer
const reply = await Promise.race([
  botSaid,
  new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error('no bot message on the listen stream within 10 s')), 10000)
  }),
]).finally(() => clearTimeout(timer))
out.heard = reply.payload
await listener.disconnect()

const { messages } = await client.listMessages({ conversationId: conversation.id })
out.listed = messages.map((m) => m.payload.type)
const { message: fetched } = await client.getMessage({ id: message.id })
out.getMessage = fetched.id === message.id
const conversations = []
for await (const c of client.list.conversations({})) conversations.push(c.id)
out.conversations = conversations.sort()
out.getUser = (await client.getUser({})).user.id
console.log(JSON.stringify(out))
